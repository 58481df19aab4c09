from spp_gui.cli import main

raise SystemExit(main())
