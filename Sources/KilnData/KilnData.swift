// KilnData
