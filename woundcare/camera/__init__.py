"""aiortc clients: the head camera (publisher) and a viewer, speaking the /ws protocol."""
