"""The engine-neutral core: the contracts every component and both engines share.

``components`` (config bases and the build context), ``source`` and ``writer`` (the connector
contracts), ``step`` (the transform contract and dead-letter builders), ``positions`` (the
position store for sinks that cannot keep positions), ``state`` (durable state of stateful
steps) and ``routing`` (processing-profile filters for writers). The core imports only
``schemas`` and the foundation modules (``errors``, ``scrub``, ``logs``, ``metrics``); ``io``
and ``transforms`` meet only here (docs/architecture.md, "Import order").
"""
