"""WebRTC signaling: the wire protocol and consultation rooms.

This package knows nothing of storage or health records; it reaches the rest of the
application only through :class:`signaling.admission.Admission` (who may join) and
:class:`signaling.sink.EventSink` (what happened).
"""
