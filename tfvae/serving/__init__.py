"""TF-Serving-compatible model server behind ``python -m tfvae.serve`` (the CLI, :mod:`tfvae.serve`).

- :mod:`.errors`: :class:`~.errors.ServingError`, TF Serving's HTTP status per error code;
- :mod:`.servable`: one loaded SavedModel version (signatures, validated predict, warm-up);
- :mod:`.manager`: the models of a ``models.config``, their versions and hot reload;
- :mod:`.rest`: TF Serving's JSON REST API (predict, status, metadata) on aiohttp, with its limits;
- :mod:`.grpc_api`: the ``PredictionService`` and ``ModelService`` gRPC servicers (``grpc.aio``);
- :mod:`.policy`: which signatures each model exposes (privacy views by default);
- :mod:`.tls`: TLS for gRPC (TF Serving's ``SSLConfig``) and REST;
- :mod:`.metrics`: request counts and latencies in Prometheus' format;
- :mod:`.batching`: server-side batching (``--enable_batching``, TF Serving's ``BatchingParameters``);
- :mod:`.app`: :class:`~.app.ServingApp`, which starts and stops both servers.
"""
