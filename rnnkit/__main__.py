from rnnkit.cli.main import main

main(prog_name="rnnkit")
