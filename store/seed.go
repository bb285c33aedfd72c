package store

// seedCategory is one category of the seeded catalog.
type seedCategory struct {
	Slug, Name string
	Products   []seedProduct
}

// seedProduct is one product of the seeded catalog. Its illustration is
// static/img/products/{Slug}.svg.
type seedProduct struct {
	Slug, Name, Description string
	PriceCents              int64
	Stock                   int
}

// seedCatalog is what an empty database is filled with on first start. Product
// ids follow this order, 1..N, so workshop scripts may name them by number.
var seedCatalog = []seedCategory{
	{Slug: "coffee-tea", Name: "Coffee & Tea", Products: []seedProduct{
		{"espresso-cup", "Espresso Cup", "A thick-walled porcelain cup that keeps a double shot hot to the last sip.", 1200, 200},
		{"pour-over-kettle", "Pour-Over Kettle", "Gooseneck kettle for a slow, even pour. Works on gas, electric and induction.", 4900, 120},
		{"french-press", "French Press", "Eight cups, borosilicate glass, a steel plunger that never lets grounds through.", 3400, 150},
		{"tea-tin", "Sencha Tea Tin", "Fifty grams of first-flush green tea in an airtight tin.", 1450, 180},
		{"statelab-mug", "Statelab Mug", "Stoneware mug printed with the one rule of stateless services: keep state elsewhere.", 1600, 250},
		{"coffee-beans", "House Coffee Beans", "A kilo of medium-roast beans, chocolate and cherry, roasted weekly.", 2800, 160},
	}},
	{Slug: "stationery", Name: "Stationery", Products: []seedProduct{
		{"dot-grid-notebook", "Dot-Grid Notebook", "A5, 192 numbered pages of 100 g paper that takes fountain-pen ink without bleeding.", 1900, 220},
		{"fountain-pen", "Fountain Pen", "Steel fine nib, piston filler, a barrel you can see the ink through.", 5600, 100},
		{"pencil-set", "Pencil Set", "Twelve cedar pencils from 4H to 8B, in a tin.", 1100, 240},
		{"sticky-notes", "Sticky Notes", "Six pads of square notes for the architecture diagram on the wall.", 650, 300},
		{"index-cards", "Index Cards", "Two hundred ruled cards for planning, flash cards and user stories.", 500, 300},
		{"desk-ruler", "Brass Desk Ruler", "Thirty centimetres of solid brass that also keeps papers flat.", 2300, 110},
	}},
	{Slug: "outdoors", Name: "Outdoors", Products: []seedProduct{
		{"trail-tent", "Trail Tent", "A two-person tent that pitches in four minutes and packs to the size of a loaf.", 18900, 100},
		{"compass", "Baseplate Compass", "Liquid-filled capsule, declination adjustment, a mirror for sighting.", 3900, 140},
		{"water-bottle", "Steel Water Bottle", "Double-walled, 750 ml, cold for a day and hot for half of one.", 2700, 200},
		{"headlamp", "Headlamp", "Three hundred lumens, red night mode, charges over USB-C.", 3500, 150},
		{"camp-stove", "Camp Stove", "A folding gas stove that boils a litre in three and a half minutes.", 4400, 120},
		{"day-pack", "Day Pack", "Twenty-two litres, a padded back and a pocket for everything.", 6900, 130},
	}},
	{Slug: "games", Name: "Games & Puzzles", Products: []seedProduct{
		{"chess-set", "Chess Set", "Weighted wooden pieces and a folding board that stores them.", 5900, 100},
		{"dice-set", "Dice Set", "Seven polyhedral dice in a cotton bag, for every game on the shelf.", 900, 300},
		{"jigsaw-puzzle", "Jigsaw Puzzle", "A thousand pieces that make a map of a data centre at night.", 2400, 140},
		{"playing-cards", "Playing Cards", "Linen-finish cards that shuffle like new for years.", 800, 260},
		{"puzzle-cube", "Puzzle Cube", "A smooth three-by-three cube with a stand, for the coffee break.", 1300, 200},
		{"kite", "Delta Kite", "A ripstop kite that flies in a light breeze, with fifty metres of line.", 3100, 110},
	}},
}
