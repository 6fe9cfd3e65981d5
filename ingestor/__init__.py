"""Tickstream's Binance ingestor: exchange market streams in, contract events out."""
