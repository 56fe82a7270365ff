"""Ground-side tooling of Kumo Edge: data preparation, training and export (torch lives here,
never in :mod:`kumo_edge`)."""
