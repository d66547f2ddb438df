"""A signed assessment for the patient's journal (DIPS, Helseplattformen, the municipal EPJ):
identified, unlike the pilot's pseudonymous research export.

- :mod:`.record` gathers what the journal gets, opened through the record services;
- :mod:`.document` makes it a FHIR R4 document ``Bundle``;
- :mod:`.pdf` makes it a PDF note (PDF/A-2U, fonts embedded) for systems that take attachments.
"""
