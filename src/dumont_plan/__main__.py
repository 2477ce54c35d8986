from dumont_plan.cli.main import main

raise SystemExit(main())
