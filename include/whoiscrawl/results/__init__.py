"""What a run leaves behind: results drained from Kafka and the coverage report."""
