"""Synthetic, labelled sentences for the entity head (PERSON, ADDRESS): Faker values in seven
locales dropped into many template families, plus sentences about public figures, fictional
characters, landmarks and brands that carry no personal data (labelled O on purpose).

Everything comes from the `faker` package (PyPI, MIT) and the lists below; no corpus is
downloaded. Spans are Python character offsets, half-open.

Generalisation is measured on what training never sees (`split()`):
  - whole template families (HELD_OUT_FAMILIES),
  - whole locales (HELD_OUT_LOCALES),
  - a fifth of the public entities (every fifth item of each list); another fifth chooses the
    threshold (the `public_calibration` split).

Usage (to look at the data): python entity_data.py --split train --n 20 [--seed 0]
"""

import argparse
import json
import random
import string

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]
HELD_OUT_LOCALES = ["nl_NL", "it_IT"]

# Slots: {P} full name, {F} first name, {L} last name (with a title), {A} full address on one
# line, {AL} full address on several lines, {S} street address alone: all labelled.
# {C} city alone, {O} company, {X} public entity: never labelled (a city or an employer alone is
# not an address or a person).
FAMILIES = {
    "introduction": [
        "My name is {P} and I live at {A}.",
        "Hi, I'm {P}. Can you help me write a cover letter?",
        "I am {P}, born in {C}, and I need help with my tax return.",
        "This is {F} from accounting, quick question about the budget.",
        "Hello! {F} here. What's a good recipe for dinner tonight?",
        "I'm {P}, my address is {A}, and I want to change my plan.",
    ],
    "letter": [
        "Please draft a letter to {P} at {A} about the overdue invoice.",
        "Write a polite reminder to {L} that the rent is due on Friday.",
        "Dear {P},\nthank you for your order. It ships tomorrow.",
        "Compose an e-mail to {F} thanking them for the interview.",
        "Write a condolence card for {P} and her family.",
        "Draft a reference letter for {P}, who worked with us at {O} for three years.",
    ],
    "shipping": [
        "Ship it to {A}.",
        "Please send the package to {P}, {A}.",
        "Deliver to: {S}, {C}",
        "The return label should read {P}\n{AL}",
        "Can you change the delivery address to {A}? Thanks, {F}",
        "Forward my mail from {S} to my new place at {A}.",
    ],
    "support": [
        "Customer {P} called about a double charge on the last bill.",
        "Ticket #{N}: {P} reports that the app crashes on login.",
        "Summarise this complaint from {P}: the courier left the parcel at {S}.",
        "Escalate the case of {L}; she has been waiting two weeks.",
        "{P} wants a refund and asked us to post the cheque to {A}.",
    ],
    "hr": [
        "{P} joined {O} as a senior analyst in March.",
        "Write a performance review for {P}, who reports to {P2}.",
        "Please prepare the contract for our new hire {P}, living at {A}.",
        "{L} will be on parental leave until June.",
        "Schedule an onboarding call between {F} and {P2}.",
    ],
    "medical": [
        "Patient {P}, resident at {A}, was admitted with chest pain.",
        "Summarise the discharge notes for {P}.",
        "Dr. {LN} referred {P} to the cardiology clinic.",
        "Remind {F} to take the antibiotics twice a day.",
    ],
    "legal": [
        "Draft a lease between the landlord {P} and the tenant {P2} for the flat at {A}.",
        "The defendant, {P}, of {A}, denies the claim.",
        "Witness statement of {P}, taken on Tuesday.",
        "Prepare a power of attorney naming {P} as agent.",
    ],
    "form": [
        "Name: {P}\nAddress: {AL}\nReason: subscription change",
        "full_name={P}; street={S}; city={C}",
        "Name,Address\n{P},\"{A}\"",
        '{{"customer": "{P}", "address": "{A}"}}',
        "Recipient: {P}\nShip to: {A}",
    ],
    "chat": [
        "can u tell {F} im running late",
        "what should i get {F} for her birthday? she likes gardening",
        "my neighbour {P} keeps parking in front of {S}, how do I complain?",
        "help me plan a surprise party for {P} at {A}",
        "translate to Spanish: {P} will pick you up at {S}",
    ],
    "notes": [
        "Meeting notes: {P} presented the roadmap, {P2} owns the follow-ups.",
        "Action item for {F}: send the slides to {P2}.",
        "Visited {P} at home ({A}) to install the router.",
        "Call with {P} moved to Thursday.",
    ],
    "narrative": [
        "Yesterday {P} walked from {S} to the station.",
        "{P} and {P2} moved into the house at {A} last summer.",
        "After the accident, {L} stayed with her sister in {C}.",
        "The keys are with {F}, who lives at {S}.",
    ],
    "signature": [
        "Best regards,\n{P}\n{AL}",
        "Thanks!\n-- \n{P} | {O}",
        "Kind regards, {P}, {O}, {A}",
    ],
    "travel": [
        "Book a double room for {P} from Friday to Sunday.",
        "The taxi should pick up {P} at {A} at 6 am.",
        "Passenger name: {P}. Seat 14C.",
        "Please add {P2} as a second driver on the rental for {P}.",
        "Send the itinerary to {F} and cc {P2}.",
        "Our guest {L} arrives late; leave the keys at {S}.",
    ],
    "finance": [
        "Open a savings account for {P}, residing at {A}.",
        "The invoice is addressed to {P}, {A}.",
        "Transfer the deposit back to {P} before the end of the month.",
        "Account holder: {P}\nBilling address: {AL}",
        "Why did {F}'s card get declined at the store on {S}?",
        "Insurance claim filed by {P} for water damage at {A}.",
    ],
    "school": [
        "Write a report card comment for {P}, who improved a lot in maths.",
        "Invite the parents of {F} to a meeting next Tuesday.",
        "{P} was absent on Monday; her mother called.",
        "Update the student record of {P}: new address {A}.",
        "Draft a recommendation letter for my student {P}.",
    ],
    "real_estate": [
        "Write a listing for the three-bedroom house at {A}.",
        "The viewing at {S} with {P} is at noon.",
        "{P} made an offer on the flat at {A}.",
        "Summarise the inspection report for {S}, {C}.",
    ],
}
# Codes, times, amounts and reference numbers right beside names and addresses ("room 12B",
# "at 6 pm", "INV-4471"), unlabelled: without them the head reads a short alphanumeric token
# next to an entity as part of it (seen on development families held out of training by
# benches/entities/head_experiment.py; none of these families is a test family).
for _fam, _t in [
    ("introduction", "I'm {P}, room 12B, and the heating has been off since 7 pm."),
    ("letter", "Write to {P} at {A}: order 88C ships on 3 May, reference {N}."),
    ("shipping", "Ship order 4471-B to {A} before 5 pm; the gate code is 2290."),
    ("shipping", "Two boxes for {P}, {A}. Tracking JD0148 2291, weight 3 kg."),
    ("hr", "{P} (badge 7731) starts on Monday at 9 am, desk 3F."),
    ("medical", "Patient {P}, bed 12A, ward C2: give the next dose at 10 pm."),
    ("finance", "Pay invoice INV-{N} for {P}, {A}, by 30 June; amount 420.50 EUR."),
    ("school", "{P} from class 5C left locker 118 open after the 2 pm test."),
    ("real_estate", "Flat 4B at {A} is free from 1 June; get the keys from {P} after 6 pm."),
    ("narrative", "At 7 pm {P} left {S} and took bus 42 towards the airport."),
    ("form", "Name: {P}\nRef: AB-{N}\nAddress: {AL}\nSlot: 10:30"),
]:
    FAMILIES[_fam].append(_t)
HELD_OUT_FAMILIES = ["legal", "chat", "signature"]

# Sentences about public entities: nothing here is personal data. {X} is filled from the list the
# template names; a third of each list is held out.
PUBLIC_TEMPLATES = {
    "person": [
        "Who was {X}?",
        "What is {X} best known for?",
        "Summarise the life of {X} in three sentences.",
        "Write a short essay on {X}'s influence.",
        "Compare {X} and {Y}.",
        "When did {X} die?",
        "Give me a quote by {X}.",
        "Explain the main ideas of {X} to a ten-year-old.",
        "What did {X} discover?",
        "Tell me about {X}.",
    ],
    "fiction": [
        "Who is {X}?",
        "Write a story in which {X} meets {Y}.",
        "Why is {X} so popular?",
        "Describe {X}'s personality.",
    ],
    "place": [
        "How tall is the {X}?",
        "What is the best time to visit the {X}?",
        "Plan a day trip from {C} to the {X}.",
        "Tell me the history of the {X}.",
    ],
    "brand": [
        "Is {X} a good company to work for?",
        "Compare the phones of {X} and {Y}.",
        "Write an ad for {X}.",
    ],
}
PUBLIC = {
    "person": [
        "Albert Einstein", "Marie Curie", "Isaac Newton", "Charles Darwin", "Ada Lovelace",
        "Alan Turing", "Nikola Tesla", "Galileo Galilei", "Leonardo da Vinci", "William Shakespeare",
        "Jane Austen", "Mahatma Gandhi", "Nelson Mandela", "Martin Luther King Jr.", "Abraham Lincoln",
        "George Washington", "Winston Churchill", "Napoleon Bonaparte", "Julius Caesar", "Cleopatra",
        "Queen Elizabeth II", "Barack Obama", "Angela Merkel", "Frida Kahlo", "Pablo Picasso",
        "Vincent van Gogh", "Ludwig van Beethoven", "Wolfgang Amadeus Mozart", "Johann Sebastian Bach",
        "Frédéric Chopin", "Sigmund Freud", "Karl Marx", "Friedrich Nietzsche", "Immanuel Kant",
        "Aristotle", "Plato", "Socrates", "Confucius", "Stephen Hawking", "Richard Feynman",
        "Niels Bohr", "Max Planck", "Dmitri Mendeleev", "Louis Pasteur", "Florence Nightingale",
        "Rosa Parks", "Malcolm X", "Neil Armstrong", "Yuri Gagarin", "Amelia Earhart",
        "Elvis Presley", "Michael Jackson", "Taylor Swift", "Beyoncé", "Lionel Messi",
        "Cristiano Ronaldo", "Serena Williams", "Muhammad Ali", "Usain Bolt", "Roger Federer",
        "Steve Jobs", "Bill Gates", "Elon Musk", "Mark Zuckerberg", "Warren Buffett",
        "Thomas Edison", "Johannes Gutenberg", "Christopher Columbus", "Marco Polo", "Joan of Arc",
        "Victor Hugo", "Gabriel García Márquez", "Dante Alighieri", "Miguel de Cervantes",
        "Leo Tolstoy", "Fyodor Dostoevsky", "Ernest Hemingway", "Mark Twain", "Charles Dickens",
        "Virginia Woolf", "Simone de Beauvoir", "Jean-Paul Sartre", "Rembrandt", "Claude Monet",
        "Salvador Dalí", "Michelangelo", "Queen Victoria", "Catherine the Great", "Peter the Great",
        "Genghis Khan", "Alexander the Great", "Hannibal", "Carl Sagan", "Jane Goodall",
        "Johannes Kepler", "Nicolaus Copernicus", "Michael Faraday", "James Clerk Maxwell",
        "Enrico Fermi", "Werner Heisenberg", "Erwin Schrödinger", "Paul Dirac", "Rosalind Franklin",
        "Gregor Mendel", "Alexander Fleming", "Tim Berners-Lee", "Grace Hopper", "John von Neumann",
        "Carl Friedrich Gauss", "Leonhard Euler", "René Descartes", "Blaise Pascal", "Voltaire",
        "Jean-Jacques Rousseau", "John Locke", "Thomas Hobbes", "Adam Smith", "John Maynard Keynes",
        "Charles de Gaulle", "Franklin D. Roosevelt", "John F. Kennedy", "Theodore Roosevelt",
        "Thomas Jefferson", "Margaret Thatcher", "Otto von Bismarck", "Simón Bolívar", "Che Guevara",
        "Fidel Castro", "Vladimir Lenin", "Mao Zedong", "Dalai Lama", "Pope Francis", "Mother Teresa",
        "Martin Luther", "Buddha", "Homer", "Virgil", "Ovid", "Goethe", "Friedrich Schiller",
        "Franz Kafka", "Thomas Mann", "Hermann Hesse", "Marcel Proust", "Albert Camus",
        "Umberto Eco", "Italo Calvino", "George Orwell", "Agatha Christie", "J. R. R. Tolkien",
        "J. K. Rowling", "Stephen King", "Toni Morrison", "Maya Angelou", "Oscar Wilde", "James Joyce",
        "Edgar Allan Poe", "Emily Dickinson", "Walt Whitman", "Giuseppe Verdi", "Richard Wagner",
        "Antonio Vivaldi", "Pyotr Ilyich Tchaikovsky", "Igor Stravinsky", "Freddie Mercury",
        "John Lennon", "Paul McCartney", "Bob Dylan", "David Bowie", "Madonna", "Adele", "Shakira",
        "Marilyn Monroe", "Charlie Chaplin", "Audrey Hepburn", "Alfred Hitchcock", "Steven Spielberg",
        "Meryl Streep", "Tom Hanks", "Leonardo DiCaprio", "Pelé", "Diego Maradona", "Zinedine Zidane",
        "Michael Jordan", "LeBron James", "Rafael Nadal", "Novak Djokovic", "Simone Biles",
        "Michael Phelps", "Tiger Woods", "Lewis Hamilton", "Ayrton Senna", "Jeff Bezos",
        "Henry Ford", "Walt Disney", "Coco Chanel", "Andy Warhol", "Banksy", "Gustav Klimt",
        "Edvard Munch", "Sandro Botticelli", "Raphael", "Caravaggio", "Johannes Vermeer",
    ],
    "fiction": [
        "Harry Potter", "Hermione Granger", "Sherlock Holmes", "Dr. Watson", "Frodo Baggins",
        "Gandalf", "Darth Vader", "Luke Skywalker", "Mickey Mouse", "Homer Simpson",
        "James Bond", "Batman", "Superman", "Wonder Woman", "Spider-Man", "Elizabeth Bennet",
        "Mr. Darcy", "Captain Ahab", "Don Quixote", "Hamlet", "Romeo", "Juliet", "Pinocchio",
        "Alice in Wonderland", "Winnie the Pooh", "Peter Pan", "Tintin", "Asterix", "Mario",
        "Lara Croft", "Katniss Everdeen", "Atticus Finch", "Jay Gatsby", "Anna Karenina",
        "Ron Weasley", "Albus Dumbledore", "Lord Voldemort", "Bilbo Baggins", "Aragorn",
        "Han Solo", "Princess Leia", "Yoda", "Indiana Jones", "Captain Kirk", "Mr. Spock",
        "Bart Simpson", "Bugs Bunny", "Donald Duck", "Snow White", "Cinderella", "Shrek",
        "Hercule Poirot", "Miss Marple", "Dracula", "Frankenstein", "Robin Hood", "King Arthur",
        "Merlin", "Odysseus", "Achilles", "Macbeth", "Othello", "Ebenezer Scrooge", "Oliver Twist",
        "Huckleberry Finn", "Tom Sawyer", "Holden Caulfield", "Jon Snow", "Daenerys Targaryen",
        "Walter White", "Tony Stark", "Captain America", "Wolverine", "Pikachu", "Sonic",
    ],
    "place": [
        "Eiffel Tower", "Statue of Liberty", "Great Wall of China", "Colosseum", "Taj Mahal",
        "Big Ben", "Sagrada Família", "Leaning Tower of Pisa", "Brandenburg Gate", "Louvre",
        "Golden Gate Bridge", "Sydney Opera House", "Machu Picchu", "Acropolis", "Mount Everest",
        "Grand Canyon", "Niagara Falls", "Buckingham Palace", "Rijksmuseum", "Alhambra",
        "Neuschwanstein Castle", "Mont Saint-Michel", "Empire State Building", "Kremlin",
        "Vatican Museums", "Tower of London", "Notre-Dame de Paris", "Pantheon", "Trevi Fountain",
        "Arc de Triomphe", "Versailles", "Stonehenge", "Petra", "Angkor Wat", "Chichen Itza",
        "Christ the Redeemer", "Burj Khalifa", "Central Park", "Times Square", "Hollywood Sign",
        "Matterhorn", "Mount Fuji", "Kilimanjaro", "Uffizi", "Prado Museum", "Doge's Palace",
        "Cologne Cathedral", "Charles Bridge", "Anne Frank House", "Atomium", "Tower Bridge",
    ],
    "brand": [
        "Apple", "Google", "Microsoft", "Amazon", "Samsung", "Siemens", "Volkswagen", "Toyota",
        "Nestlé", "IKEA", "Zara", "Philips", "Ferrari", "Nike", "Adidas", "Coca-Cola",
        "McDonald's", "Netflix", "Spotify", "Airbnb", "Tesla", "BMW", "Heineken", "Lego",
        "Mercedes-Benz", "Audi", "Porsche", "Renault", "Peugeot", "Fiat", "Lamborghini", "Sony",
        "Nintendo", "Intel", "Nvidia", "Oracle", "SAP", "Uber", "PayPal", "Visa", "Mastercard",
        "Starbucks", "Pepsi", "Danone", "L'Oréal", "Gucci", "Prada", "Louis Vuitton", "Rolex",
    ],
}

# Texts with neither a person nor an address, so the head learns what "nothing" looks like.
PLAIN = [
    "What is the capital of {C}?",
    "Write a Python function that reverses a linked list.",
    "Explain how a heat pump works.",
    "Give me three ideas for a vegetarian lunch.",
    "How do I centre a div in CSS?",
    "Translate 'good morning' into German.",
    "What's the weather usually like in {C} in April?",
    "Summarise the plot of a heist movie in two lines.",
    "List the planets in order from the sun.",
    "Our office moved to {C} last year.",
    "How do I file a complaint with {O}?",
    "Draft a press release for {O}'s new product line.",
    "Is it safe to eat raw cookie dough?",
    "Convert 5 miles to kilometres.",
    "Write a haiku about autumn rain.",
    "What does HTTP 429 mean?",
    "Recommend a road trip route through {C} and nearby towns.",
    "How many people work at {O}?",
    "Main Street is closed for repairs this weekend.",
    "The meeting is in room 4B on the second floor.",
    "Write a letter to my landlord about the broken heater.",
    "My neighbour keeps parking in front of my garage, how do I complain?",
    "The defendant denies the claim and the attorney asks for more time.",
    "Draft a lease between a landlord and a tenant for a two-bedroom flat.",
    "Translate to Spanish: the driver will pick you up at the station.",
    "Best regards,\nThe {O} team",
    "Thanks!\n-- \nCustomer Support | {O}",
    "Ask the patient to take the medicine twice a day.",
    "Tell my manager I'm running late.",
    "The tenant moved out of the flat last month.",
    "Please send the invoice to our accounts department.",
    "what should i get my sister for her birthday? she likes gardening",
    "Schedule an onboarding call with the new hire and her mentor.",
    "The witness saw a blue car near the bakery.",
    "{O} opened a new warehouse near {C}.",
    "Kind regards, Sales Department, {O}",
    "Customer called about a double charge on the last bill.",
    "Ship it to the address on file.",
    "Deliver the parcel to the back door, not the front porch.",
    "Power of attorney forms are available at the town hall.",
]

# The head's labels, in the order of its output units.
LABELS = ["O", "B-PERSON", "I-PERSON", "B-ADDRESS", "I-ADDRESS"]
ENTITY_TYPES = {"P": "person", "P2": "person", "F": "person", "L": "person", "LN": "person",
                "A": "address", "AL": "address", "S": "address"}


def _split_lists(part):
    """`train` (3 of every 5 items), `calibration` (the 4th, to choose the threshold) or
    `test` (the 5th, reported)."""
    keep = {"train": (0, 1, 2), "calibration": (3,), "test": (4,)}[part]
    return {kind: [x for i, x in enumerate(items) if i % 5 in keep] for kind, items in PUBLIC.items()}


class Generator:
    def __init__(self, seed, locales):
        from faker import Faker

        self.rng = random.Random(seed)
        self.fakers = {}
        for i, loc in enumerate(locales):
            f = Faker(loc)
            f.seed_instance(seed * 100 + i)
            self.fakers[loc] = f
        self.locales = locales

    def value(self, fake, slot):
        r = self.rng
        if slot in ("P", "P2"):
            x = r.random()
            if x < 0.1:
                n = f"{fake.last_name()}, {fake.first_name()}"
            elif x < 0.2:
                n = f"{fake.first_name()} {r.choice(string.ascii_uppercase)}. {fake.last_name()}"
            elif x < 0.3:
                n = f"{fake.first_name()} {fake.last_name()}"
            else:
                n = fake.name()
            if r.random() < 0.1:
                n = n.upper() if r.random() < 0.5 else n.lower()
            return n
        if slot == "F":
            return fake.first_name()
        if slot in ("L", "LN"):
            title = r.choice(["Mr.", "Mrs.", "Ms.", "Dr.", "Mr", "Ms", "Herr", "Frau", "M.", "Mme", "Sr.", "Sra."])
            return f"{title} {fake.last_name()}"
        if slot == "A":
            if r.random() < 0.25:
                # street and city only, or street, postcode and city in one line
                parts = [" ".join(fake.street_address().split())]
                if r.random() < 0.5:
                    parts.append(f"{fake.postcode()} {fake.city()}")
                else:
                    parts.append(fake.city())
                return ", ".join(parts)
            return ", ".join(" ".join(line.split()) for line in fake.address().split("\n"))
        if slot == "AL":
            return "\n".join(" ".join(line.split()) for line in fake.address().split("\n"))
        if slot == "S":
            return " ".join(fake.street_address().split())
        if slot == "C":
            return fake.city()
        if slot in ("O", "E"):
            # {E}: a company as a named person's employer, labelled only where ENTITY_TYPES
            # names the slot (benches/entities/employer_experiment.py; not in the shipped head)
            return fake.company()
        if slot == "N":
            return str(r.randint(1000, 99999))
        raise KeyError(slot)

    def fill(self, template, fake, extra=None):
        """Render a template; returns (text, spans) with spans [(start, end, type)]."""
        text, spans, i = "", [], 0
        while i < len(template):
            if template.startswith("{{", i):
                text += "{"
                i += 2
                continue
            if template.startswith("}}", i):
                text += "}"
                i += 2
                continue
            if template[i] == "{":
                j = template.index("}", i)
                slot = template[i + 1 : j]
                v = extra[slot] if extra and slot in extra else self.value(fake, slot)
                start = len(text)
                text += v
                if slot in ENTITY_TYPES:
                    spans.append((start, len(text), ENTITY_TYPES[slot]))
                i = j + 1
                continue
            text += template[i]
            i += 1
        return text, spans

    def private(self, families, n):
        out = []
        for _ in range(n):
            fam = self.rng.choice(families)
            loc = self.rng.choice(self.locales)
            t = self.rng.choice(FAMILIES[fam])
            text, spans = self.fill(t, self.fakers[loc])
            out.append({"text": text, "spans": spans, "family": fam, "locale": loc})
        return out

    def public(self, lists, n):
        out = []
        kinds = list(PUBLIC_TEMPLATES)
        for _ in range(n):
            kind = self.rng.choice(kinds)
            loc = self.rng.choice(self.locales)
            t = self.rng.choice(PUBLIC_TEMPLATES[kind])
            x, y = self.rng.sample(lists[kind], 2)
            text, spans = self.fill(t, self.fakers[loc], {"X": x, "Y": y})
            assert not spans
            out.append({"text": text, "spans": [], "family": "public-" + kind, "locale": loc})
        return out

    def plain(self, n):
        out = []
        for _ in range(n):
            loc = self.rng.choice(self.locales)
            text, spans = self.fill(self.rng.choice(PLAIN), self.fakers[loc])
            out.append({"text": text, "spans": spans, "family": "plain", "locale": loc})
        return out


def split(name, n, seed=0):
    """`train`, `validation` (training's families, locales and public entities, other values),
    `ood_family` (held-out families), `ood_locale` (held-out locales), `public_calibration`
    (public entities set aside to choose the threshold), `ood_public` (public entities seen by
    neither training nor calibration)."""
    train_fams = [f for f in FAMILIES if f not in HELD_OUT_FAMILIES]
    train_locs = [l for l in LOCALES if l not in HELD_OUT_LOCALES]
    if name in ("train", "validation"):
        g = Generator(seed + (0 if name == "train" else 1), train_locs)
        return (g.private(train_fams, int(n * 0.6)) + g.public(_split_lists("train"), int(n * 0.25))
                + g.plain(n - int(n * 0.6) - int(n * 0.25)))
    if name == "public_calibration":
        return Generator(seed + 5, LOCALES).public(_split_lists("calibration"), n)
    if name == "ood_family":
        return Generator(seed + 2, train_locs).private(HELD_OUT_FAMILIES, n)
    if name == "ood_locale":
        return Generator(seed + 3, HELD_OUT_LOCALES).private(train_fams, n)
    if name == "ood_public":
        return Generator(seed + 4, LOCALES).public(_split_lists("test"), n)
    raise ValueError(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="train")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for r in split(a.split, a.n, a.seed):
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
