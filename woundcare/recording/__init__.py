"""Consented recording: a silent aiortc peer in the room whose video is sealed as it is written."""
