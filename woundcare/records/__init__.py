"""Health records: consultations, their session log, snapshots, assessments."""
