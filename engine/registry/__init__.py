"""Registry client: ping, auth challenges and the token flow, credentials, pull, push, browse.

Layers, from the wire up::

    challenge.py    WWW-Authenticate parser (pure)
    hosts.py        registry name -> API host, scheme, Docker Hub quirks (pure)
    errors.py       distribution-spec error bodies -> RegistryError (pure)
    credentials.py  docker's config.json, credential helpers
    auth.py         Basic / Bearer token flow with a per-scope token cache
    direct.py       blob GETs over their own socket, bodies drained by a worker thread (pull's fast path)
    client.py       RegistryClient: one httpx.AsyncClient per registry, retries, redirects, manifests, blobs
    pull.py push.py browse.py   the operations
    service.py      RegistryService (Engine.registry), what the CLI and the TUI call
"""
