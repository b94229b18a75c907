import time

time.sleep(30)
model = {"createModelState": lambda options: None}
