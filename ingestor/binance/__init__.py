"""Sans-I/O Binance Spot protocol code: messages, parsing, stream names, errors."""
