//! A shipped table of English given names and their common nicknames (`william` ~ `bill`),
//! written for this project from common usage (no third-party list copied). Two first names
//! are nickname-equivalent when some group holds both; the probabilistic comparison of first
//! names gives that its own level.
//!
//! ```
//! use lake::resolve::nicknames::equivalent;
//! assert!(equivalent("bill", "william"));
//! assert!(equivalent("bob", "robbie"));
//! assert!(!equivalent("bill", "bob"));
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

/// Groups of names that may stand for one another; the formal name first.
const GROUPS: &[&[&str]] = &[
    &["abigail", "abby", "abbie", "gail"],
    &["abraham", "abe", "bram"],
    &["albert", "al", "bert", "bertie"],
    &["alexander", "alex", "alec", "xander", "sandy", "sasha", "lex"],
    &["alexandra", "alex", "alexa", "sandra", "sandy", "lexi", "sasha"],
    &["alfred", "al", "alf", "fred", "freddie"],
    &["allison", "ally", "allie"],
    &["amanda", "mandy", "manda"],
    &["andrew", "andy", "drew"],
    &["angela", "angie"],
    &["anthony", "tony", "ant"],
    &["antonio", "tony", "toni"],
    &["arthur", "art", "artie"],
    &["barbara", "barb", "barbie", "babs"],
    &["benjamin", "ben", "benny", "benji"],
    &["bernard", "bernie", "barney"],
    &["beverly", "bev"],
    &["bradley", "brad"],
    &["calvin", "cal"],
    &["cameron", "cam"],
    &["catherine", "cathy", "cate", "kate", "katie", "cat"],
    &["charles", "charlie", "chuck", "chas", "chaz", "carl"],
    &["charlotte", "charlie", "lottie", "lotte"],
    &["christina", "chris", "tina", "chrissy", "christy"],
    &["christine", "chris", "tina", "chrissy"],
    &["christopher", "chris", "kit", "topher", "christoph"],
    &["clifford", "cliff"],
    &["cynthia", "cindy"],
    &["daniel", "dan", "danny"],
    &["david", "dave", "davey", "davy"],
    &["deborah", "debra", "deb", "debbie", "debby"],
    &["dennis", "denny"],
    &["donald", "don", "donnie"],
    &["dorothy", "dot", "dottie", "dolly"],
    &["douglas", "doug"],
    &["edward", "ed", "eddie", "eddy", "ted", "teddy", "ned"],
    &["edwin", "ed", "eddie"],
    &["eleanor", "ellie", "nell", "nora", "elle"],
    &["elizabeth", "liz", "lizzie", "beth", "betty", "betsy", "eliza", "libby", "liza", "bess", "elisa", "lisa"],
    &["emily", "em", "emmy", "millie"],
    &["eugene", "gene"],
    &["frances", "fran", "frannie", "fanny"],
    &["francis", "frank", "frankie", "fran"],
    &["franklin", "frank", "frankie"],
    &["frederick", "fred", "freddie", "freddy", "rick"],
    &["gabriel", "gabe"],
    &["gabrielle", "gabby", "gabi", "elle"],
    &["gerald", "gerry", "jerry"],
    &["gregory", "greg"],
    &["harold", "harry", "hal"],
    &["henry", "hank", "harry", "hal"],
    &["herbert", "herb", "bert"],
    &["isabella", "isabel", "bella", "izzy", "belle"],
    &["jacob", "jake", "jay"],
    &["jacqueline", "jackie", "jacqui"],
    &["james", "jim", "jimmy", "jamie", "jimbo"],
    &["janet", "jan", "jenny"],
    &["jeffrey", "jeff"],
    &["jennifer", "jen", "jenny", "jenn", "jenna"],
    &["jessica", "jess", "jessie"],
    &["john", "jack", "johnny", "jon"],
    &["jonathan", "jon", "jonny", "johnny", "nathan"],
    &["joseph", "joe", "joey", "jo"],
    &["josephine", "jo", "josie"],
    &["joshua", "josh"],
    &["judith", "judy", "jude"],
    &["katherine", "kathy", "kate", "katie", "kat", "kit", "kathryn", "kay"],
    &["kathleen", "kathy", "kate", "katie", "kat"],
    &["kenneth", "ken", "kenny"],
    &["kimberly", "kim", "kimmy"],
    &["lawrence", "larry", "laurie", "lawrie"],
    &["leonard", "leo", "len", "lenny"],
    &["louis", "lou", "louie"],
    &["louise", "lou", "lulu"],
    &["margaret", "maggie", "meg", "peggy", "marge", "margie", "greta", "madge", "daisy"],
    &["matthew", "matt", "matty"],
    &["michael", "mike", "mikey", "mick", "micky", "mickey"],
    &["michelle", "shelly", "michele"],
    &["nancy", "nan"],
    &["nathaniel", "nathan", "nate", "nat"],
    &["nicholas", "nick", "nicky", "nico"],
    &["nicole", "nikki", "nicky", "cole"],
    &["pamela", "pam"],
    &["patricia", "pat", "patty", "patsy", "trish", "tricia"],
    &["patrick", "pat", "paddy", "rick"],
    &["peter", "pete"],
    &["philip", "phil", "pip"],
    &["rebecca", "becky", "becca", "beck"],
    &["richard", "rick", "ricky", "dick", "rich", "richie"],
    &["robert", "rob", "bob", "bobby", "robbie", "bert", "robin"],
    &["ronald", "ron", "ronnie"],
    &["rosemary", "rose", "rosie"],
    &["samantha", "sam", "sammy"],
    &["samuel", "sam", "sammy"],
    &["sandra", "sandy"],
    &["sarah", "sara", "sally", "sadie"],
    &["stephanie", "steph", "stephie"],
    &["stephen", "steve", "stevie", "steven"],
    &["steven", "steve", "stevie", "stephen"],
    &["susan", "sue", "susie", "suzy", "suzanne"],
    &["terence", "terry"],
    &["theodore", "ted", "teddy", "theo"],
    &["thomas", "tom", "tommy"],
    &["timothy", "tim", "timmy"],
    &["valerie", "val"],
    &["victoria", "vicky", "vicki", "tori", "vic"],
    &["vincent", "vince", "vinny"],
    &["walter", "walt", "wally"],
    &["william", "will", "bill", "billy", "willie", "liam", "willy"],
    &["zachary", "zach", "zack"],
];

fn index() -> &'static HashMap<&'static str, Vec<u16>> {
    static INDEX: OnceLock<HashMap<&'static str, Vec<u16>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<u16>> = HashMap::new();
        for (g, names) in GROUPS.iter().enumerate() {
            for name in *names {
                map.entry(name).or_default().push(g as u16);
            }
        }
        map
    })
}

/// Whether two different normalized first names can be the same person's (a nickname and
/// its formal name, or two nicknames of one name).
pub fn equivalent(a: &str, b: &str) -> bool {
    let map = index();
    match (map.get(a), map.get(b)) {
        (Some(x), Some(y)) => x.iter().any(|g| y.contains(g)),
        _ => false,
    }
}
