model = {"createModelState": lambda options: None}
