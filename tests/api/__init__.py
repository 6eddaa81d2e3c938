"""API tests: the routes through the app, the role matrix, the OpenAPI fuzz, hostile input from the hall
and from sectors."""
