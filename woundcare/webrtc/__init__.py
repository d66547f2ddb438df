"""aiortc clients of the /ws protocol, shared by the head camera (``camera/``) and the
tests' and benches' viewer: the signaling client and the viewer's side of a call."""
