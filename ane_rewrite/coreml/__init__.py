"""Stage 4, Core ML: the program the passes produced → an ML Program (``export``), with the
converter gaps closed (``compat``), our MIL fusion (``fusion``), and a reader of saved
programs' MIL (``mil``)."""
