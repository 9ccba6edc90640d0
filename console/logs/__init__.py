"""Worker logs in the console: shipping log records to a table, and the page that reads it."""
