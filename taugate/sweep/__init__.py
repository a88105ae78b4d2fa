"""``taugate sweep``: ``config.py`` the grid, ``cells.py`` one cell, ``run.py`` the folder and the
loop, ``stats.py`` statistics over seeds, ``summary.py`` summary.md, ``figures.py`` its figures."""
