// placeholder until the runtime lands (removed by it)
