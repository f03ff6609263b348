"""Event source connectors: sqs, kinesis, dynamodb_streams, memory."""
