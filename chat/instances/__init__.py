"""Optional: several app instances serving one PostgreSQL room (skip this package on a first read).

`relay.py` carries the room's news between instances over PostgreSQL's LISTEN/NOTIFY, passes a Stop to the instance
writing the reply, and ends the replies of an instance that died. On SQLite none of it runs.
"""
