modle = object()  # misspelled on purpose
