"""The audit trail: every security-relevant event, append-only and hash-chained.

``log`` appends (``AuditLog.record``), ``chain`` is the wire format (entry encoding, hashes,
checkpoint signatures), ``verify`` walks the chain and names the first break.
"""
