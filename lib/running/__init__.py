"""Running the steps: a notebook's bootstrap, the steps themselves (one road per step), the shared kernel, the
batch runner."""
