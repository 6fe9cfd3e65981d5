"""The Tickstream gateway: WebSocket fan-out from Redis Streams with replay from offsets."""
