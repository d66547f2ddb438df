"""HL7 FHIR R4 pieces shared by the two exports: the pseudonymous research bundle
(:mod:`woundcare.pilot.fhir`) and the identified journal document (:mod:`woundcare.journal`)."""
