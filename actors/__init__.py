"""The actors: thin thespian shells over core/, one module per actor kind (the only place thespian is used)."""
