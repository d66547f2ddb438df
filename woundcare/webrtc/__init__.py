"""aiortc clients of the /ws protocol, shared by the head camera (``camera/``) and the
server's recorder (``recording/``): the signaling client and the viewer's side of a call."""
