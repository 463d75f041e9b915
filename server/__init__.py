"""The websocket sync hub (`crdtdoc serve`): rooms, y-protocols sync, durable storage.

Built in the hub issue; this package holds its modules as they land.
"""
