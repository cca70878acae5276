"""The job event stream: server-sent events that resume exactly where they dropped."""
