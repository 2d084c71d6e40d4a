"""Cluster mode: agents, topic ownership and the catalog in etcd (docs/cluster.md).

``keys`` lays out and encodes what a cluster keeps in etcd (pure functions), ``lease``
keeps a lease's safe window on the local clock (pure), ``etcd`` talks to etcd through
``aetcd``, which is installed with the ``cluster`` extra (``pip install odradek[cluster]``).
"""
