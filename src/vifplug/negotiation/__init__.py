"""Negotiation with the network manager (seed 004): this host's ``HostInfo``
(``hostinfo``), reading a peer's refusal (``refusal``) and pushing HostInfo to
the manager, backlevelling until it reads it (``push``)."""
