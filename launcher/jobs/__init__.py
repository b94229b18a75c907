"""The createState job: phases, durations, deadlines, cancellation, outcomes."""
