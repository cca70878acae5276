"""The portal's pages and JSON API."""
