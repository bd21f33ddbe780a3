"""TF-Serving-compatible model server behind ``python -m tfvae.serve`` (the CLI, :mod:`tfvae.serve`).

- :mod:`.errors`: :class:`~.errors.ServingError`, TF Serving's HTTP status per error code;
- :mod:`.servable`: one loaded SavedModel version (signatures, validated predict, warm-up);
- :mod:`.manager`: the models of a ``models.config``, their versions and hot reload;
- :mod:`.rest`: TF Serving's JSON REST API (predict, status, metadata);
- :mod:`.grpc_api`: the ``PredictionService`` and ``ModelService`` gRPC servicers;
- :mod:`.app`: :class:`~.app.ServingApp`, which starts and stops both servers.
"""
