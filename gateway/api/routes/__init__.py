"""The API's routes, one router per resource: health, cameras, events, the page, the session."""
