"""Where everything lives: the workspace folder and its SQLite database, atomic file writes,
erasing for good, a workspace as one archive, and the background processes that work in a
workspace.

The bottom of the flow: the parts above (data → model → space → edits) import from here. The
two ways back up are deliberate and lazy (inside the function): `erase` removes what was made
from a crop (latents, previews), and `archive` checks that an imported run's weights load."""
