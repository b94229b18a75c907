"""What the launcher tells operators: its log, job log lines, metrics, usage samples."""
