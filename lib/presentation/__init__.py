"""What a person sees: figures, their display in a notebook, the run reports."""
