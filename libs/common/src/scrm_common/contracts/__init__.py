"""Public contracts between services: event and command schemas, topic names, the Kafka envelope."""
