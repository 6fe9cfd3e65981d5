"""A Binance-Spot-compatible exchange on loopback, with fault injection."""
