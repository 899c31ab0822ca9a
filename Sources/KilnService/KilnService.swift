// KilnService
