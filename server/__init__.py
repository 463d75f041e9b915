"""The websocket sync hub (`crdtdoc serve`): rooms, y-protocols sync, durable storage.

Installed as `crdtdoc.server`; its layout is in docs/ARCHITECTURE.md.
"""
