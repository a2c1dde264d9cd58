"""The actors: thin thespian shells over core/, one module per actor kind (the only place thespian is used)."""

from actors import thespian_patches

# Before any actor system starts in this process (its admin and actors are forked from it).
thespian_patches.apply()
