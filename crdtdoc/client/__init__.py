"""The websocket client: a replica kept in sync with a hub room (`crdtdoc.connect`)."""
