"""The web dashboard: server-rendered pages and a JSON API over the store (`peam dashboard`)."""
