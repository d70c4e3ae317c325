"""The models page at /ui/: static files (static/) that read and act through the API's own routes."""
