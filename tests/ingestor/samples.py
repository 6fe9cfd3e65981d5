"""The payload examples of shared/reference/binance-spot-streams.md, byte for byte."""

from __future__ import annotations

TRADE = (
    b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
    b'"T":1672515782136,"m":true,"M":true}'
)
AGG_TRADE = (
    b'{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,'
    b'"l":105,"T":1672515782136,"m":true,"M":true}'
)
KLINE = (
    b'{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,'
    b'"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015",'
    b'"v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}'
)
MINI_TICKER = (
    b'{"e":"24hrMiniTicker","E":1672515782136,"s":"BNBBTC","c":"0.0025","o":"0.0010",'
    b'"h":"0.0025","l":"0.0010","v":"10000","q":"18"}'
)
TICKER = (
    b'{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018",'
    b'"x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100",'
    b'"o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,'
    b'"L":18150,"n":18151}'
)
BOOK_TICKER = (
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)
PARTIAL_DEPTH = b'{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}'
DEPTH_UPDATE = (
    b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
    b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
)
SERVER_SHUTDOWN = b'{"e":"serverShutdown","E":1770123456789}'
SERVER_SHUTDOWN_COMBINED = b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
SUBSCRIBE_OK = b'{"result":null,"id":1}'
LIST_SUBSCRIPTIONS = b'{"result":["btcusdt@aggTrade"],"id":3}'
GET_PROPERTY = b'{"result":true,"id":2}'
CONTROL_ERROR = b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}'
TOO_MANY = b'{"error":{"code":4,"msg":"Too many subscriptions"},"id":7}'

REST_DEPTH = (
    b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
)
REST_AGG_TRADES = (
    b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}]'
)
REST_KLINES = (
    b'[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",'
    b'1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]'
)

# Every stream payload with the stream name a combined connection would wrap it in.
STREAM_PAYLOADS = {
    "bnbbtc@trade": TRADE,
    "bnbbtc@aggTrade": AGG_TRADE,
    "bnbbtc@kline_1m": KLINE,
    "bnbbtc@miniTicker": MINI_TICKER,
    "bnbbtc@ticker": TICKER,
    "bnbusdt@bookTicker": BOOK_TICKER,
    "bnbbtc@depth5@100ms": PARTIAL_DEPTH,
    "bnbbtc@depth@100ms": DEPTH_UPDATE,
}


def combined(stream: str, payload: bytes) -> bytes:
    """Wrap a raw payload the way /stream?streams=... delivers it."""
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"
