"""The Tickstream gateway: WebSocket fan-out from Redis Streams with replay from offsets.

The core is a one-way chain; each layer knows the one below it and, above it, only the small
protocol it calls back (so a layer can be changed without reading the others)::

    Node (node.py)  builds and wires everything; is the reader's Dispatcher
      │
      ├── StreamReader (reader.py) ── reads ──► Broker (broker.py: RedisBroker; memory_broker.py)
      │        │ Dispatcher.dispatch(type, entries) / Dispatcher.reset(type, reason)  [4009]
      │        ▼
      ├── Hub (hub.py)  routes each event to Subscriber objects (by type, symbol, user)
      │        │ Subscriber.offer / offer_batch / resync
      │        ▼
      │   Subscription (subscription.py, conflate.py)  one connection's filter and position
      │        │ Writer.push_many(frames)                 ▲ started by
      │        ▼                                          │
      │   Writer (writer.py) ── Sink.write_frames ──► socket (server.py, endpoint.py)
      │                                                   │
      └── Session (session.py)  one connection: messages, limits; owns its Subscriptions,
               its Writer, and uses the node's Replayer (replay.py: history, then live;
               history.py: shared history reads; recovery.py: the seam rules)

At the bottom, imported by every layer and importing none of them: :mod:`gateway.values` (the
stream entry, the encoded event, the batch, the stream state and the frame types) and
:mod:`gateway.protocol` (the client protocol, sans I/O). Frames are ``bytes`` from the encoder
to the socket. ``tests/test_layout.py`` fails on any import cycle among these modules.
"""
